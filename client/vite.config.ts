/// <reference types="vitest/config" />
import react from "@vitejs/plugin-react";
import { defineConfig } from "vite";

// Hosts the dev server answers for. Through the router (nginx) the browser's
// Host header is the router's (localhost:3050); add yours, comma-separated,
// in VITE_ALLOWED_HOSTS when you browse the dev stack under another name.
const allowedHosts = ["localhost", "127.0.0.1", "client", "nginx"].concat(
  (process.env.VITE_ALLOWED_HOSTS ?? "").split(",").filter(Boolean),
);

export default defineConfig({
  plugins: [react()],
  server: {
    host: true,
    port: 3000,
    strictPort: true,
    allowedHosts,
    // Without the router, `npm run dev` proxies /api to an API on port 5000.
    proxy: { "/api": process.env.API_URL ?? "http://localhost:5000" },
    // Bind mounts on Docker Desktop may not deliver file events: VITE_USE_POLLING=1.
    watch: { usePolling: process.env.VITE_USE_POLLING === "1" },
  },
  // Pre-bundle the dependencies when the dev server starts; otherwise Vite may
  // discover them on the first page load and reload that page.
  optimizeDeps: {
    include: ["react", "react/jsx-dev-runtime", "react-dom/client", "react-router", "@tanstack/react-query"],
  },
  preview: { port: 3000, strictPort: true },
  build: { sourcemap: true },
  test: {
    environment: "jsdom",
    setupFiles: ["src/test/setup.ts"],
    include: ["src/**/*.test.{ts,tsx}"],
    restoreMocks: true,
  },
});
