"""Lifecycle journeys: automated touches from triggers and schedules (see docs/journeys.md)."""
