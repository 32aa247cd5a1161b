"""The northbound API: REST under /api/v1, the live WebSocket and the dashboard.

It reads the runtime only through `gateway.runtime.view.LineView` and history
through the store; it never reaches into adapters. `create_app()` in
`gateway.api.app` builds it.
"""
