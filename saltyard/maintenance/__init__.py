"""Taking Mesos agents out of service without taking the applications down (drain.py)."""
