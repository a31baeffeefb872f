include:
  - base.packages
  - base.time
  - base.sysctl
  - base.limits
  - base.rsyslog
