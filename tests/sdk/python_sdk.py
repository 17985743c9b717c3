"""Drives ferrify with the official Dify Python SDK (PyPI `dify-client`), unmodified.

usage: python_sdk.py BASE_URL CHAT_KEY COMPLETION_KEY
Exits non-zero with a message on the first mismatch.
"""
import json
import sys

from dify_client import ChatClient, CompletionClient

base, chat_key, completion_key = sys.argv[1:4]


def check(cond, what):
    if not cond:
        print(f"FAIL: {what}")
        sys.exit(1)
    print(f"ok: {what}")


chat = ChatClient(chat_key)
chat.base_url = base + "/v1"

r = chat.create_chat_message(inputs={}, query="hello from the sdk", user="sdk-user", response_mode="blocking")
check(r.status_code == 200, f"blocking chat answered {r.status_code}")
body = r.json()
check(body["answer"] == "hello from the sdk", "blocking answer echoes the query")
conv = body["conversation_id"]

r = chat.create_chat_message(inputs={}, query="streamed words", user="sdk-user", response_mode="streaming",
                             conversation_id=conv)
answer, events = "", []
for line in r.iter_lines(decode_unicode=True):
    if line.startswith("data: "):
        data = json.loads(line[len("data: "):])
        events.append(data["event"])
        if data["event"] == "message":
            answer += data["answer"]
check(events and events[-1] == "message_end", f"stream ends with message_end ({events[-3:]})")
check(answer == "streamed words", "streamed answer")

r = chat.get_conversation_messages("sdk-user", conversation_id=conv, limit=10)
check(r.status_code == 200 and [m["query"] for m in r.json()["data"]] == ["hello from the sdk", "streamed words"],
      "history through the SDK")
r = chat.get_conversations("sdk-user", limit=5)
check(r.status_code == 200 and r.json()["data"][0]["id"] == conv, "conversations through the SDK")
r = chat.rename_conversation(conv, "renamed by sdk", "sdk-user")
check(r.status_code == 200 and r.json()["name"] == "renamed by sdk", "rename through the SDK")
r = chat.get_application_parameters("sdk-user")
check(r.status_code == 200 and "user_input_form" in r.json(), "parameters through the SDK")

completion = CompletionClient(completion_key)
completion.base_url = base + "/v1"
r = completion.create_completion_message(inputs={"query": "bonjour"}, response_mode="blocking", user="sdk-user")
check(r.status_code == 200 and "bonjour" in r.json()["answer"], "blocking completion")
r = completion.create_completion_message(inputs={"query": "salut"}, response_mode="streaming", user="sdk-user")
text = "".join(json.loads(l[6:]).get("answer", "") for l in r.iter_lines(decode_unicode=True) if l.startswith("data: "))
check("salut" in text, "streaming completion")
print("python sdk: all ok")
