"""The supervisor: uncertainty estimators, takeover gates, the handover protocol, humans."""
