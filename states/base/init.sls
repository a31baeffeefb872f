include:
  - base.packages
  - base.ca
  - base.time
  - base.sysctl
  - base.limits
  - base.rsyslog
