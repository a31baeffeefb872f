"""Application logs: containers -> the node's rsyslog -> RELP -> the log node's spool -> Flume.

``flume_conf`` turns the logging pillar into Flume's properties file (and refuses bad pillar
with the value named); ``store`` reads what Flume wrote and what it reports (``applog.tail``,
``applog.stats``). docs/logging.md has the pipeline and each hop's guarantee.
"""
