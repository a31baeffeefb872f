"""The release workflow (issue 14): the release data of an app (plan) and the canary gate."""
