"""The segscan coordinator: plans runs, takes results, judges reachability."""
