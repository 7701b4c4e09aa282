"""Agents: trained policies, ensembles and risk critics that expose their uncertainty."""
