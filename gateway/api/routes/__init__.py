"""One module per resource; each holds thin routes over the view, the store and the spec."""
