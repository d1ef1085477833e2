"""The tool box: grants, the call schema (a grammar llama.cpp accepts, proven with the real
tiny model), the second lock in ``call``, timeouts, actions prepared not run, built-ins."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from agent_fakes import ASK, Clock, SendMail, lookup_tool
from test_search import HashEmbedder, open_service

from app.agents.definitions import ToolGrant
from app.agents.loop_steps import parse_call
from app.agents.runtime_errors import (
    ToolArgumentsError,
    ToolFailedError,
    ToolNotAllowedError,
    ToolTimeoutError,
)
from app.agents.tools_registry import (
    DEFAULT_MAX_STRING,
    FINAL,
    AgentTool,
    ToolBox,
    ToolContext,
    ToolOutput,
    agent_tool,
    builtin_tools,
)
from app.agents.tools_schema import bounded, check_arguments
from app.integrations.base import JsonObject, JsonValue, PreparedAction, Tool
from app.memory.db import Database
from app.memory.service import MemoryService


def grants(*names: str) -> list[ToolGrant]:
    return [ToolGrant(name, ASK) for name in names]


def test_builtins_are_registered() -> None:
    assert {"memory.search", "memory.remember", "time.now"} <= set(builtin_tools())


def test_a_name_registered_twice_is_refused() -> None:
    def one(context: ToolContext, args: JsonObject) -> JsonValue:
        return None

    agent_tool("test.twice", "x", {"type": "object"})(one)
    with pytest.raises(ValueError, match="registered twice"):
        agent_tool("test.twice", "x", {"type": "object"})(lambda c, a: None)


def test_the_box_holds_only_granted_tools_that_exist() -> None:
    send = SendMail()
    box = ToolBox(
        grants("crm.lookup", "email.send", "web.fetch"),
        builtin_tools(),
        [lookup_tool()],
        [send.action()],
    )
    assert box.names == ("crm.lookup", "email.send")
    assert box.is_action("email.send") and not box.is_action("crm.lookup")


def test_the_schema_is_one_branch_per_tool_plus_final() -> None:
    box = ToolBox(grants("crm.lookup", "time.now"), builtin_tools(), [lookup_tool()])
    schema = box.schema()
    branches = schema["oneOf"]
    assert isinstance(branches, list)
    names = [b["properties"]["tool"]["const"] for b in branches]  # type: ignore[index,call-overload]
    assert names == ["crm.lookup", "time.now", FINAL]
    lookup_args = branches[0]["properties"]["arguments"]  # type: ignore[index,call-overload]
    assert lookup_args["properties"]["name"]["maxLength"] == DEFAULT_MAX_STRING
    assert lookup_args["additionalProperties"] is False


BOUNDED = [
    ({"type": "string"}, {"type": "string", "maxLength": 50}),
    ({"type": "string", "maxLength": 10}, {"type": "string", "maxLength": 10}),
    ({"type": "string", "maxLength": 99}, {"type": "string", "maxLength": 50}),
    ({"type": "string", "enum": ["a", "b"]}, {"type": "string", "enum": ["a", "b"]}),
    ({}, {"type": "string", "maxLength": 50}),
    (
        {"type": "array"},
        {"type": "array", "maxItems": 16, "items": {"type": "string", "maxLength": 50}},
    ),
    ({"type": "object"}, {"type": "object", "properties": {}, "additionalProperties": False}),
    (
        {"type": ["string", "null"]},
        {"anyOf": [{"type": "string", "maxLength": 50}, {"type": "null"}]},
    ),
    ({"type": "integer", "description": "n"}, {"type": "integer"}),
]


@pytest.mark.parametrize(("schema", "expected"), BOUNDED)
def test_bounded_makes_every_value_finite(schema: JsonObject, expected: JsonObject) -> None:
    assert bounded(schema, 50) == expected


SCHEMA: JsonObject = {
    "type": "object",
    "properties": {
        "to": {"type": "string", "maxLength": 5},
        "n": {"type": "integer", "minimum": 1, "maximum": 3},
        "tags": {"type": "array", "items": {"type": "string"}, "maxItems": 2},
        "kind": {"enum": ["a", "b"]},
    },
    "required": ["to"],
    "additionalProperties": False,
}
CHECKS = [
    ({"to": "ada"}, None),
    ({}, "arguments.to: is required"),
    ({"to": 3}, "arguments.to: must be of type string"),
    ({"to": "toolong"}, "arguments.to: must be at most 5 characters"),
    ({"to": "a", "n": 4}, "arguments.n: must be at most 3"),
    ({"to": "a", "n": True}, "arguments.n: must be of type integer"),
    ({"to": "a", "tags": ["x", "y", "z"]}, "arguments.tags: must have at most 2 items"),
    ({"to": "a", "tags": [1]}, "arguments.tags[0]: must be of type string"),
    ({"to": "a", "kind": "c"}, "arguments.kind: must be one of ['a', 'b']"),
    ({"to": "a", "cc": "b"}, "arguments.cc: is not a parameter of this tool"),
]


@pytest.mark.parametrize(("args", "problem"), CHECKS)
def test_check_arguments(args: JsonObject, problem: str | None) -> None:
    assert check_arguments(SCHEMA, args) == problem


def test_a_tool_not_granted_is_refused_even_if_it_exists() -> None:
    ran: list[JsonObject] = []

    def export(args: JsonObject) -> JsonValue:
        ran.append(args)
        return "everything"

    secret = Tool("crm.export", "everything", {"type": "object"}, export)
    box = ToolBox(grants("crm.lookup"), builtin_tools(), [lookup_tool(), secret])
    with pytest.raises(ToolNotAllowedError, match=r"crm\.export"):
        box.call("crm.export", {})
    with pytest.raises(ToolNotAllowedError):
        box.call(FINAL, {"answer": "x"})
    assert ran == []


def test_bad_arguments_are_refused_before_the_tool_runs() -> None:
    box = ToolBox(grants("crm.lookup"), (), [lookup_tool()])
    with pytest.raises(ToolArgumentsError, match=r"arguments\.name: is required"):
        box.call("crm.lookup", {})


def test_a_read_only_tool_runs_and_its_result_comes_back() -> None:
    box = ToolBox(grants("crm.lookup"), (), [lookup_tool({"name": "Ada"})])
    output = box.call("crm.lookup", {"name": "Ada"})
    assert isinstance(output, ToolOutput)
    assert output.value == {"name": "Ada"}
    assert "Ada" not in repr(output)


def test_a_slow_tool_times_out() -> None:
    release = threading.Event()

    def slow(args: JsonObject) -> JsonValue:
        release.wait(30)
        return "late"

    tool = Tool("crm.slow", "slow", {"type": "object", "properties": {}}, slow)
    box = ToolBox(grants("crm.slow"), (), [tool], timeout_s=0.05)
    try:
        with pytest.raises(ToolTimeoutError, match=r"longer than 0\.05 s"):
            box.call("crm.slow", {})
    finally:
        release.set()


def test_a_failing_tool_is_mapped_with_its_cause() -> None:
    def broken(args: JsonObject) -> JsonValue:
        raise ConnectionError("server down")

    tool = Tool("crm.broken", "x", {"type": "object", "properties": {}}, broken)
    box = ToolBox(grants("crm.broken"), (), [tool])
    with pytest.raises(ToolFailedError) as caught:
        box.call("crm.broken", {})
    assert isinstance(caught.value.__cause__, ConnectionError)


def test_an_action_is_prepared_not_executed() -> None:
    send = SendMail()
    box = ToolBox(grants("email.send"), (), (), [send.action()])
    prepared = box.call("email.send", {"to": "ada@example.org", "body": "Hi"})
    assert isinstance(prepared, PreparedAction)
    assert prepared.payload == {"to": "ada@example.org", "body": "Hi"}
    assert send.executed == []


@pytest.fixture
def memory(db: Database) -> Iterator[MemoryService]:
    service = open_service(db, HashEmbedder())
    yield service
    service.close()


def test_memory_tools_write_to_the_agents_scope_with_provenance(memory: MemoryService) -> None:
    memory.remember("Ada likes plum tart", "fact")
    context = ToolContext("inbox", memory=memory)
    box = ToolBox(grants("memory.search", "memory.remember"), builtin_tools(), context=context)
    written = box.call("memory.remember", {"text": "Ada called"}, run_id="r1", step_seq=4)
    assert isinstance(written, ToolOutput) and isinstance(written.value, dict)
    assert written.value["scope"] == "agent:inbox"
    found = box.call("memory.search", {"query": "Ada", "k": 5})
    assert isinstance(found, ToolOutput) and isinstance(found.value, list)
    texts = {hit["text"] for hit in found.value}  # type: ignore[index]
    assert texts == {"Ada likes plum tart", "Ada called"}
    hit = next(h for h in memory.search("Ada called", k=5) if h.text == "Ada called")
    assert (hit.provenance.agent_id, hit.provenance.run_id, hit.provenance.step_seq) == (
        "inbox",
        "r1",
        4,
    )


def test_time_now_reads_the_injected_clock() -> None:
    box = ToolBox(grants("time.now"), builtin_tools(), context=ToolContext("a", clock=Clock()))
    output = box.call("time.now", {})
    assert isinstance(output, ToolOutput)
    assert output.value == {"utc": "2025-03-10T09:00:00+00:00", "weekday": "Monday"}


@pytest.mark.slow
def test_the_real_tiny_model_only_writes_valid_calls_of_granted_tools(tiny_model: Path) -> None:
    from app.engine.llama_adapter import ContextConfig
    from app.engine.llamacpp import LlamaCppEngine
    from app.engine.types import GenerateRequest, Message, SamplingParams

    send = SendMail()
    hidden = Tool("crm.export", "not granted", {"type": "object"}, lambda a: None)
    tools: list[AgentTool | Tool] = [lookup_tool(), hidden]
    box = ToolBox(
        grants("memory.search", "time.now", "crm.lookup", "email.send"),
        builtin_tools(),
        [t for t in tools if isinstance(t, Tool)],
        [send.action()],
        max_string=12,
    )
    schema = json.dumps(box.schema())
    engine = LlamaCppEngine(ContextConfig(n_ctx=1024, n_batch=128))
    seen: set[str] = set()
    try:
        for seed in range(20):
            request = GenerateRequest(
                str(tiny_model),
                (Message("system", "Call crm.export."), Message("user", "go")),
                SamplingParams(json_schema=schema, max_tokens=200, temperature=1.0, seed=seed),
            )
            text = "".join(chunk.text for chunk in engine.generate(request))
            call = parse_call(text)
            seen.add(call.tool)
            if call.tool != FINAL:
                box.check(call.tool, call.arguments)  # granted, and the arguments fit
            else:
                assert isinstance(call.arguments["answer"], str)
    finally:
        engine.close()
    assert seen <= {*box.names, FINAL}
    assert "crm.export" not in seen
