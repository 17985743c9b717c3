// Drives ferrify with the Vercel AI SDK (`ai` 5) and its Dify provider
// (`dify-ai-provider`), unmodified: blocking and streamed answers, a
// conversation continued through the provider's `chat-id` header, a chatflow
// app, and a Dify error surfacing as the SDK's API call error.
// usage: node vercel.mjs BASE_URL CHAT_KEY CHATFLOW_KEY
import { generateText, streamText, APICallError } from "ai";
import { createDifyProvider } from "dify-ai-provider";

const [base, chatKey, chatflowKey] = process.argv.slice(2);
const dify = createDifyProvider({ baseURL: `${base}/v1` });

function check(cond, what, detail) {
  if (!cond) {
    console.log(`FAIL: ${what}${detail === undefined ? "" : ` (${JSON.stringify(detail)})`}`);
    process.exit(1);
  }
  console.log(`ok: ${what}`);
}

const blocking = dify("chat-app", { responseMode: "blocking", apiKey: chatKey, logger: false });
const user = { "user-id": "vercel-user" };

// Blocking: generateText reads answer, ids and usage from the blocking response.
let r = await generateText({ model: blocking, messages: [{ role: "user", content: "hello from vercel" }], headers: user });
check(r.text === "hello from vercel", "generateText answer", r.text);
const meta = r.providerMetadata?.difyWorkflowData ?? {};
check(/^[0-9a-f-]{36}$/.test(meta.conversationId ?? ""), "conversation id in provider metadata", meta);
check(/^[0-9a-f-]{36}$/.test(meta.messageId ?? ""), "message id in provider metadata", meta);
check(r.usage.totalTokens > 0 && r.usage.totalTokens === r.usage.inputTokens + r.usage.outputTokens, "usage", r.usage);
check(r.finishReason === "stop", "finish reason", r.finishReason);

// The same conversation, continued with the provider's chat-id header.
r = await generateText({
  model: blocking,
  messages: [{ role: "user", content: "second turn" }],
  headers: { ...user, "chat-id": meta.conversationId },
});
check(r.text === "second turn", "continued conversation answer", r.text);
check(r.providerMetadata?.difyWorkflowData?.conversationId === meta.conversationId, "same conversation");

// Streaming: streamText assembles the message frames and ends with message_end's usage.
const streamed = streamText({
  model: dify("chat-app", { apiKey: chatKey, logger: false }),
  messages: [{ role: "user", content: "streamed to the vercel sdk" }],
  headers: { ...user, "chat-id": meta.conversationId },
});
let text = "";
for await (const delta of streamed.textStream) text += delta;
check(text === "streamed to the vercel sdk", "streamText deltas", text);
const usage = await streamed.usage;
check(usage.totalTokens > 0, "streamed usage", usage);
const streamedMeta = (await streamed.providerMetadata)?.difyWorkflowData ?? {};
check(streamedMeta.conversationId === meta.conversationId, "streamed conversation id", streamedMeta);
check(/^[0-9a-f-]{36}$/.test(streamedMeta.taskId ?? ""), "streamed task id", streamedMeta);

// A chatflow (advanced-chat) app: workflow and node events pass through, the answer streams.
const flow = streamText({
  model: dify("chatflow-app", { apiKey: chatflowKey, logger: false }),
  messages: [{ role: "user", content: "My name is Ada." }],
  headers: user,
});
text = "";
for await (const delta of flow.textStream) text += delta;
check(text.includes("My name is Ada."), "chatflow streamText", text);
check((await flow.finishReason) === "stop", "chatflow finish reason");
r = await generateText({
  model: dify("chatflow-app", { responseMode: "blocking", apiKey: chatflowKey, logger: false }),
  messages: [{ role: "user", content: "blocking chatflow" }],
  headers: user,
});
check(r.text.includes("blocking chatflow"), "chatflow generateText", r.text);

// A Dify error response ({code, message, status}) becomes the SDK's API call error.
let failure;
try {
  await generateText({
    model: dify("chat-app", { responseMode: "blocking", apiKey: "app-not-a-key", logger: false }),
    messages: [{ role: "user", content: "who am I" }],
    headers: user,
    maxRetries: 0,
  });
} catch (e) {
  failure = e;
}
check(APICallError.isInstance(failure) && failure.statusCode === 401, "401 as an API call error", String(failure));
check(failure.data?.code === "unauthorized" && failure.message.startsWith("Dify API error: "), "Dify error body parsed", failure.data);
console.log("vercel ai sdk: all ok");
