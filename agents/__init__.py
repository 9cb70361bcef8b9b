"""The AI engine's library (providers, prompts, tools, memory, guardrails):
to come; the agent actor is `actors.agent`."""
