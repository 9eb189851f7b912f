"""The wire contract between segscan's coordinator and its agents."""
