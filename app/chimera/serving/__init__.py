"""The serving core, between the API dialects and the engine.

A dialect turns its request into a `ChatTurn` (turn.py), `prepare()` renders and constrains it,
`ChatRun` (run.py) runs it and reports typed events (events.py): reasoning, content, tool calls,
done with usage and timings. Each dialect (`http/openai_chat.py`, `http/anthropic.py`,
`http/responses.py`, `http/ollama.py`) only encodes those events in its own shapes and framing.
"""
