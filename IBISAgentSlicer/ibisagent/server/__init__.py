"""The local agent server (`ibisagent serve`): FastAPI + uvicorn, the ``server`` extra.

Import `ibisagent.server.app.make_app` to build one. This package file imports nothing, so
`ibisagent --help` works where the server extra is not installed. Clients never import this
package; they use `ibisagent.client`.
"""
