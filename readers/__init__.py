"""Reader plugins: one module per source, each exporting `PLUGIN` for its entry point."""
