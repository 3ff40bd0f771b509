"""Writer plugins: one module (or package) per sink, each exporting `PLUGIN`."""
