-- A deliberate no-op that keeps the version numbers aligned with LangGraph's.
SELECT 1;
