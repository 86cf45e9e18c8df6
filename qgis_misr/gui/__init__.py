"""Qt widgets of the plugin (thin: they collect parameters and show results)."""
