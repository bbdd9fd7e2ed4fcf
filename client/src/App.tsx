import { Navigate, NavLink, Route, Routes } from "react-router";
import { FibPage } from "./pages/FibPage";
import { NotFound } from "./pages/NotFound";
import { SystemPage } from "./pages/SystemPage";

export function App() {
  return (
    <div className="app">
      <header className="app__header">
        <h1>Fib Calculator</h1>
        <nav aria-label="Main">
          <NavLink to="/" end>
            Home
          </NavLink>
          <NavLink to="/system">System</NavLink>
        </nav>
      </header>
      <main>
        <Routes>
          <Route path="/" element={<FibPage />} />
          <Route path="/system" element={<SystemPage />} />
          {/* The course's placeholder page became the system page; old links still arrive. */}
          <Route path="/otherpage" element={<Navigate to="/system" replace />} />
          <Route path="*" element={<NotFound />} />
        </Routes>
      </main>
    </div>
  );
}
