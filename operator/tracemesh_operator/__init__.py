"""tracemesh control plane: compiles Telemetry/MeshConfig into per-pod proxy configs and pushes them.

Layout: `compiler` (pure: Telemetry hierarchy -> tracing config), `workload` (pure: pod -> node
identity and full proxy config), `state` (in-memory index of what the operator watches),
`handlers` (kopf), `discovery` (config push on 15010), `injection` (webhook on 15017), `cli`.
"""

__version__ = "0.1.0"
