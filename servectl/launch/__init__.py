"""Starting and tracking deployments: the launch workflow, runners (local, Docker, dry run), start-up following, records."""
