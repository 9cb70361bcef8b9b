"""One router module per resource; `serve.app.routers()` finds every module
here that has a `router`."""
