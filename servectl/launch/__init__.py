"""Starting and tracking deployments: the launch request and its jobs (start, checks, follow, record, report),
the `up` and `demo` flows, runners (local, Docker), records. Never prints: progress is events."""
