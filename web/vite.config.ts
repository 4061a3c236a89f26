// Vite build for the Flevum page: one SPA entry, deterministic content-hashed asset names under
// /assets/ (the gateway serves them with a long cache lifetime), no public dir, no source maps.
import { defineConfig } from 'vite';

export default defineConfig({
  base: '/',
  publicDir: false,
  build: {
    outDir: 'dist',
    emptyOutDir: true,
    assetsDir: 'assets',
    sourcemap: false,
    target: 'es2020',
    assetsInlineLimit: 8192,
    rollupOptions: {
      output: {
        entryFileNames: 'assets/[name]-[hash].js',
        chunkFileNames: 'assets/[name]-[hash].js',
        assetFileNames: 'assets/[name]-[hash][extname]',
      },
    },
  },
  server: {
    proxy: {
      '/v1': { target: 'http://127.0.0.1:8787', ws: true },
    },
  },
});
