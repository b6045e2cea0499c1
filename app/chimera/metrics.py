"""Prometheus metrics, on a registry owned by the server instance (no process-global state)."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)


class Metrics:
    def __init__(self) -> None:
        import time

        self.started = time.time()
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.requests = Counter(
            "chimera_http_requests_total", "HTTP requests by route, method and status",
            ["route", "method", "status"], registry=r,
        )
        self.latency = Histogram(
            "chimera_http_request_duration_seconds", "Time to the response headers, by route",
            ["route"], buckets=LATENCY_BUCKETS, registry=r,
        )
        self.in_flight = Gauge("chimera_http_requests_in_flight", "Requests being handled", registry=r)
        # LLM engines, by model (`for_model` gives one engine its own view)
        m = ["model"]
        self.prompt_tokens = Counter("chimera_llm_prompt_tokens_total", "Prompt tokens evaluated (cache hits excluded)", m, registry=r)
        self.cached_tokens = Counter("chimera_llm_cached_prompt_tokens_total", "Prompt tokens served from a slot's KV cache", m, registry=r)
        self.generated_tokens = Counter("chimera_llm_generated_tokens_total", "Tokens generated", m, registry=r)
        self.requests_done = Counter("chimera_llm_requests_total", "Generations finished, by finish reason",
                                     ["model", "finish_reason"], registry=r)
        self.tokens_per_second = Gauge("chimera_llm_generation_tokens_per_second", "Aggregate generation speed over the last second",
                                       m, registry=r)
        self.busy_slots = Gauge("chimera_llm_slots_busy", "Slots processing a request", m, registry=r)
        self.total_slots = Gauge("chimera_llm_slots_total", "Slots configured", m, registry=r)
        self.queue_length = Gauge("chimera_llm_queue_length", "Requests waiting for a slot", m, registry=r)
        self.kv_used = Gauge("chimera_llm_kv_cache_used_cells", "KV cache cells holding tokens", m, registry=r)
        self.kv_ratio = Gauge("chimera_llm_kv_cache_usage_ratio", "KV cache cells in use / total", m, registry=r)
        self.context_full = Counter("chimera_llm_kv_cache_full_total",
                                    "Times the shared KV cache had no room: a prompt put back in the queue or a generation ended", m, registry=r)
        self.context_shifts = Counter("chimera_llm_context_shifts_total", "Generations shifted at the end of their context (--context-shift)",
                                      m, registry=r)
        self.reused_tokens = Counter("chimera_llm_kv_shift_reused_tokens_total",
                                     "Prompt tokens served from a slot's cache by moving them into place (--cache-reuse)", m, registry=r)
        self.draft_tokens = Counter("chimera_llm_draft_tokens_total", "Speculative decoding: tokens drafted", m, registry=r)
        self.draft_accepted = Counter("chimera_llm_draft_accepted_tokens_total", "Speculative decoding: drafted tokens the model accepted",
                                      m, registry=r)
        self.ttft = Histogram(
            "chimera_llm_time_to_first_token_seconds", "Time from admission to the first generated token", m,
            buckets=LATENCY_BUCKETS, registry=r,
        )
        self.step_seconds = Histogram(
            "chimera_llm_step_seconds", "Wall time of one engine step (decode + sample)", m,
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 1), registry=r,
        )
        self.decode_seconds = Counter("chimera_llm_decode_seconds", "Time spent inside llama_decode", m, registry=r)
        self.loop_seconds = Counter(
            "chimera_llm_loop_seconds", "Engine loop time for steps that decode (decode, sampling, hand-off, dispatch)", m, registry=r,
        )
        # models on demand
        self.model_loaded = Gauge("chimera_model_loaded", "1 while the model is loaded", m, registry=r)
        self.model_loads = Counter("chimera_model_loads_total", "Times the model was loaded", m, registry=r)
        self.model_load_seconds = Gauge("chimera_model_load_seconds", "How long the model's last load took", m, registry=r)
        self.model_in_flight = Gauge("chimera_model_requests_in_flight", "Requests holding the model", m, registry=r)

        self.persist_errors = Counter("chimera_persist_errors", "Chat exchanges that could not be saved", registry=r)
        self.persisted = Counter("chimera_persisted_exchanges", "Chat exchanges saved", registry=r)
        self.device_memory = Gauge("chimera_device_memory_bytes", "Memory of the RPC servers' devices (--rpc), as they report it",
                                   ["device", "endpoint", "kind"], registry=r)

    def for_model(self, model: str) -> ModelMetrics:
        return ModelMetrics(self, model)

    def render(self) -> bytes:
        return generate_latest(self.registry) + self.llamacpp()

    def llamacpp(self) -> bytes:
        """The same numbers under llama-server's names (`llamacpp:*`, summed over the models), so
        dashboards built for it work; only those chimera measures the same way."""
        totals: dict[str, float] = {}
        for family in self.registry.collect():
            for sample in family.samples:
                totals[sample.name] = totals.get(sample.name, 0.0) + sample.value
        items = [
            ("counter", "prompt_tokens_total", "Number of prompt tokens processed, excluding cached tokens",
             "chimera_llm_prompt_tokens_total"),
            ("counter", "prompt_tokens_cached_total", "Number of prompt tokens reused from the cache",
             "chimera_llm_cached_prompt_tokens_total"),
            ("counter", "tokens_predicted_total", "Number of generation tokens processed", "chimera_llm_generated_tokens_total"),
            ("counter", "n_decode_total", "Total number of llama_decode() calls", "chimera_llm_step_seconds_count"),
            ("counter", "spec_decode_num_draft_tokens_total", "Speculative: Total draft tokens generated", "chimera_llm_draft_tokens_total"),
            ("counter", "spec_decode_num_accepted_tokens_total", "Speculative: Total draft tokens accepted by the target model",
             "chimera_llm_draft_accepted_tokens_total"),
            ("gauge", "predicted_tokens_seconds", "Average generation throughput in tokens/s",
             "chimera_llm_generation_tokens_per_second"),
            ("gauge", "requests_processing", "Number of requests processing", "chimera_llm_slots_busy"),
            ("gauge", "requests_deferred", "Number of requests deferred", "chimera_llm_queue_length"),
        ]
        lines = []
        for kind, name, help_text, source in items:
            lines += [f"# HELP llamacpp:{name} {help_text}", f"# TYPE llamacpp:{name} {kind}",
                      f"llamacpp:{name} {totals.get(source, 0.0):g}"]
        return ("\n".join(lines) + "\n").encode()


class ModelMetrics:
    """One engine's metrics: the same names, bound to its model's label."""

    def __init__(self, metrics: Metrics, model: str) -> None:
        self.model = model
        self.prompt_tokens = metrics.prompt_tokens.labels(model)
        self.cached_tokens = metrics.cached_tokens.labels(model)
        self.generated_tokens = metrics.generated_tokens.labels(model)
        self.tokens_per_second = metrics.tokens_per_second.labels(model)
        self.busy_slots = metrics.busy_slots.labels(model)
        self.total_slots = metrics.total_slots.labels(model)
        self.queue_length = metrics.queue_length.labels(model)
        self.kv_used = metrics.kv_used.labels(model)
        self.kv_ratio = metrics.kv_ratio.labels(model)
        self.ttft = metrics.ttft.labels(model)
        self.context_full = metrics.context_full.labels(model)
        self.reused_tokens = metrics.reused_tokens.labels(model)
        self.draft_tokens = metrics.draft_tokens.labels(model)
        self.draft_accepted = metrics.draft_accepted.labels(model)
        self.context_shifts = metrics.context_shifts.labels(model)
        self.step_seconds = metrics.step_seconds.labels(model)
        self.decode_seconds = metrics.decode_seconds.labels(model)
        self.loop_seconds = metrics.loop_seconds.labels(model)
        self._done = metrics.requests_done

    def finished(self, reason: str) -> Any:
        return self._done.labels(self.model, reason)
