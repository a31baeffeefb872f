# The example application's release data (examples/apps/hello), for the local cluster: checked
# by saltyard/release/plan.py when a release starts (each refusal names the pillar path and the
# value). Served to the salt-master node and its orchestration runs only (pillar/top.sls).
release:
  apps:
    hello:
      # The master's git server (states/git_server, pillar git_server in sites/local.sls).
      git: git://172.30.0.10/hello.git
      # <registry VIP>:5000/saltyard/hello:<full sha>, promoted as :<version>.
      image: saltyard/hello
      # The Dockerfile's BASE, in the cluster registry: the node image (Debian + python3), which
      # `saltyard cluster up` pushes there.
      base: saltyard/base:bookworm
      port: 8080
      health: {path: /health}
      # Every environment of the inventory (cluster.environments).
      instances: {fat: 1, uat: 1, prod: 2}
      resources: {cpus: 0.1, mem: 64}
      canary:
        # Traffic share (percent) and window (seconds) of each gray-release step.
        steps:
          - {share: 10, window: 30}
          - {share: 25, window: 30}
          - {share: 50, window: 30}
        # Per window: the canary fails above 1 % 5xx or a p99 above 500 ms or 25 % and 20 ms
        # above the stable group's; fewer than 50 requests in either group is inconclusive.
        gate: {max_5xx_share: 0.01, p99_ms: 500, min_requests: 50, margin: 0.25, margin_ms: 20}
        inconclusive: fail
        repeat_limit: 1
