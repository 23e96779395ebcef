"""``behaviorvlm vlm check`` and ``behaviorvlm vlm prompts``, and the shared endpoint options.

Other commands that talk to a model (``label --backend vlm``, ``segment --backend vlm``) add the
same options with :func:`add_vlm_arguments` and build the config with :func:`config_from_args`.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from napari_behaviorvlm.vlm.config import VLMConfig

__all__ = ["add_vlm_arguments", "config_from_args", "register", "register_bench"]

_CHECK_SCHEMA = {
    "type": "object",
    "properties": {"ok": {"type": "boolean"}, "animal": {"type": "string"}},
    "required": ["ok", "animal"],
}


def add_vlm_arguments(parser: argparse.ArgumentParser, *, required: bool = False) -> None:
    """Add ``--base-url --model --api-key-env --concurrency --timeout --max-retries
    --vlm-cache --price-in --price-out`` to ``parser`` (an argument group "model endpoint")."""
    group = parser.add_argument_group(
        "model endpoint", "any OpenAI-compatible server: OpenAI, vLLM, Ollama, LM Studio, "
        "llama.cpp server (see docs/vlm.md)")
    group.add_argument("--base-url", required=required,
                       help="API root, e.g. https://api.openai.com/v1 or "
                            "http://localhost:11434/v1 (Ollama)")
    group.add_argument("--model", required=required, help="model name as the server knows it")
    group.add_argument("--api-key-env", default="OPENAI_API_KEY", metavar="VAR",
                       help="NAME of the environment variable holding the API key (default "
                            "OPENAI_API_KEY; any value for local servers that ignore keys)")
    group.add_argument("--concurrency", type=int, default=4,
                       help="requests in flight at once (default 4)")
    group.add_argument("--timeout", type=float, default=60.0,
                       help="seconds per request (default 60)")
    group.add_argument("--max-retries", type=int, default=4,
                       help="retries after 429/5xx/timeouts (default 4)")
    group.add_argument("--vlm-cache", metavar="DIR",
                       help="answer cache folder (default: beside the output, or none)")
    group.add_argument("--price-in", type=float, metavar="PER_1K",
                       help="price per 1000 prompt tokens, for the cost estimate")
    group.add_argument("--price-out", type=float, metavar="PER_1K",
                       help="price per 1000 completion tokens, for the cost estimate")


def config_from_args(args: argparse.Namespace, default_cache_dir: Path | None = None
                     ) -> VLMConfig:
    """The :class:`VLMConfig` of the options added by :func:`add_vlm_arguments`.

    Raises:
        ValueError: ``--base-url`` or ``--model`` missing, or an invalid value.
    """
    if not args.base_url or not args.model:
        raise ValueError("a model backend needs --base-url and --model (e.g. --base-url "
                         "http://localhost:11434/v1 --model llava); see docs/vlm.md")
    cache_dir = args.vlm_cache if args.vlm_cache else default_cache_dir
    return VLMConfig(base_url=args.base_url, model=args.model, api_key_env=args.api_key_env,
                     concurrency=args.concurrency, timeout_s=args.timeout,
                     max_retries=args.max_retries, cache_dir=cache_dir,
                     price_per_1k_input=args.price_in, price_per_1k_output=args.price_out)


def register(subparsers) -> None:
    """Add ``vlm check`` and ``vlm prompts``."""
    parser = subparsers.add_parser(
        "vlm", help="check a model endpoint, show the prompts",
        description="Vision-language-model endpoint tools (see docs/vlm.md).")
    sub = parser.add_subparsers(dest="vlm_command", metavar="ACTION")
    parser.set_defaults(func=lambda args: parser.print_help() or 0)

    check = sub.add_parser(
        "check", help="list the server's models and ask one tiny JSON question",
        description="Checks the endpoint, the key variable, JSON output and token accounting "
                    "with one small text-only request (no cache).")
    add_vlm_arguments(check, required=True)
    check.set_defaults(func=_check)

    prompts = sub.add_parser(
        "prompts", help="list the versioned prompts or print one",
        description="Without NAME: list prompt versions. With NAME: print its system and user "
                    "templates and its JSON schema.")
    prompts.add_argument("name", nargs="?", help="prompt name or version, e.g. pose_assign_v1")
    prompts.set_defaults(func=_prompts)


def register_bench(bench_subparsers) -> None:
    """Add ``bench vlm``."""
    parser = bench_subparsers.add_parser(
        "vlm", help="client retries, concurrency and cache against the test double server",
        description="Asks N JSON questions (one image each) over HTTP to the test double "
                    "server (NOT a model: fixed latency, injected 429s and malformed answers): "
                    "once sequentially, once with --concurrency in flight, once more from the "
                    "cache. Reports answered/correct counts, calls per request, retries, "
                    "speed-up and the calls of the cached rerun (expected 0).")
    parser.add_argument("--requests", type=int, default=100, help="questions (default 100)")
    parser.add_argument("--latency", type=float, default=0.05,
                        help="test double seconds per answer (default 0.05)")
    parser.add_argument("--concurrency", type=int, default=4, help="in flight (default 4)")
    parser.add_argument("--fail-rate", type=float, default=0.1,
                        help="share of calls answered 429 (default 0.1)")
    parser.add_argument("--malformed-rate", type=float, default=0.1,
                        help="share of answers with broken JSON (default 0.1)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --json")
    parser.set_defaults(func=_bench)


def _bench(args: argparse.Namespace) -> int:
    import json

    from napari_behaviorvlm.core.atomic import atomic_write_text, check_overwrite
    from napari_behaviorvlm.vlm.bench import bench_vlm

    if args.requests < 1 or args.concurrency < 1 or args.latency < 0:
        raise ValueError("--requests and --concurrency must be >= 1, --latency >= 0")
    if not (0 <= args.fail_rate < 1 and 0 <= args.malformed_rate < 1):
        raise ValueError("--fail-rate and --malformed-rate must be in [0, 1)")
    if args.json:
        check_overwrite(args.json, args.overwrite)
    res = bench_vlm(args.requests, args.latency, args.concurrency, args.fail_rate,
                    args.malformed_rate, seed=args.seed)
    print(f"bench vlm: {args.requests} requests against the TEST DOUBLE server (not a model), "
          f"{args.latency * 1000:.0f} ms latency, {args.fail_rate:.0%} 429s, "
          f"{args.malformed_rate:.0%} malformed answers")
    for name in ("sequential", "concurrent", "cached_rerun"):
        run = res[name]
        print(f"  {name:<13} {run['wall_s']:7.2f} s  {run['requests_per_s']:7.1f} req/s  "
              f"answered {run['answered']}/{args.requests} (correct {run['correct']})  "
              f"calls/request {run['calls'] / args.requests:.2f}  retries {run['retries']}  "
              f"re-asks {run['answer_retries']}  cache hits {run['cache_hits']}")
    print(f"  speed-up with concurrency {args.concurrency}: {res['speedup_concurrent']:.1f}x "
          f"(server saw at most {res['max_in_flight']} in flight); cached rerun sent "
          f"{res['cached_rerun']['server_requests']} requests")
    if args.json:
        atomic_write_text(args.json, json.dumps(res, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0


def _check(args: argparse.Namespace) -> int:
    from napari_behaviorvlm.vlm.client import VLMClient, VLMError
    from napari_behaviorvlm.vlm.messages import VLMRequest

    config = config_from_args(args)
    print(f"endpoint {config.base_url}, model {config.model}, key from ${config.api_key_env}")
    with VLMClient(config) as client:
        try:
            models = client.list_models()
            listed = "listed" if config.model in models else "NOT listed"
            print(f"  server lists {len(models)} models; {config.model} is {listed}")
        except VLMError as exc:
            print(f"  could not list models ({exc}); trying a chat request anyway")
        request = VLMRequest(
            system="You check that a JSON endpoint works.",
            user='Reply with {"ok": true, "animal": "mouse"}.', schema=_CHECK_SCHEMA,
            prompt_version="check_v1")
        start = time.monotonic()
        answer = client.ask_json(request)
        print(f"  answer {answer.data} in {time.monotonic() - start:.2f} s "
              f"({answer.calls} calls, {answer.prompt_tokens} prompt + "
              f"{answer.completion_tokens} completion tokens)")
        print(f"  structured output: {client.format_mode}")
    return 0


def _prompts(args: argparse.Namespace) -> int:
    import json

    from napari_behaviorvlm.vlm.prompts import available_prompts, load_prompt

    if not args.name:
        for version in available_prompts():
            prompt = load_prompt(version)
            print(f"{version}: placeholders {', '.join(sorted(prompt.placeholders))}")
        return 0
    prompt = load_prompt(args.name)
    print(f"# {prompt.version}\n[system]\n{prompt.system}\n\n[user]\n{prompt.user}\n")
    if prompt.schema is not None:
        print("# schema\n" + json.dumps(prompt.schema, indent=2))
    return 0
