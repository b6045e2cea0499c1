"""The LLM side: llama.cpp loading, the continuous-batching engine, sampling, chat templates."""
