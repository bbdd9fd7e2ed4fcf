import { NavLink, Route, Routes } from "react-router";
import { FibPage } from "./pages/FibPage";
import { NotFound } from "./pages/NotFound";
import { OtherPage } from "./pages/OtherPage";

export function App() {
  return (
    <div className="app">
      <header className="app__header">
        <h1>Fib Calculator</h1>
        <nav aria-label="Main">
          <NavLink to="/" end>
            Home
          </NavLink>
          <NavLink to="/otherpage">Other Page</NavLink>
        </nav>
      </header>
      <main>
        <Routes>
          <Route path="/" element={<FibPage />} />
          <Route path="/otherpage" element={<OtherPage />} />
          <Route path="*" element={<NotFound />} />
        </Routes>
      </main>
    </div>
  );
}
