// Drives ferrify with the official Dify Node SDK (npm `dify-client`), unmodified.
// usage: node sdk.mjs BASE_URL CHAT_KEY COMPLETION_KEY
import { ChatClient, CompletionClient } from "dify-client";

const [base, chatKey, completionKey] = process.argv.slice(2);

function check(cond, what) {
  if (!cond) {
    console.log(`FAIL: ${what}`);
    process.exit(1);
  }
  console.log(`ok: ${what}`);
}

async function readStream(stream) {
  let text = "";
  for await (const chunk of stream) text += chunk.toString();
  return text
    .split("\n")
    .filter((l) => l.startsWith("data: "))
    .map((l) => JSON.parse(l.slice(6)));
}

const chat = new ChatClient(chatKey, `${base}/v1`);
let r = await chat.createChatMessage({}, "hello from node", "node-user");
check(r.status === 200 && r.data.answer === "hello from node", "blocking chat");
const conv = r.data.conversation_id;

r = await chat.createChatMessage({}, "streamed by node", "node-user", true, conv);
const frames = await readStream(r.data);
check(frames.at(-1).event === "message_end", "stream ends with message_end");
check(frames.filter((f) => f.event === "message").map((f) => f.answer).join("") === "streamed by node", "streamed answer");

r = await chat.getConversationMessages("node-user", conv, null, 10);
check(r.status === 200 && r.data.data.length === 2, "history");
r = await chat.getConversations("node-user", null, 5);
check(r.status === 200 && r.data.data[0].id === conv, "conversations");
r = await chat.renameConversation(conv, "named by node", "node-user", false);
check(r.status === 200 && r.data.name === "named by node", "rename");

const completion = new CompletionClient(completionKey, `${base}/v1`);
r = await completion.createCompletionMessage({ query: "bonjour" }, "node-user");
check(r.status === 200 && r.data.answer.includes("bonjour"), "blocking completion");
console.log("node sdk: all ok");
