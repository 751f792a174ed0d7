// The official OpenAI client (npm `openai`) against xfmr-serve: a greedy completion on token
// ids, the same request streamed, a chat completion whole and streamed, the model list and an
// error. Prints what it got as JSON.
//
//   node openai_client.cjs NODE_MODULES BASE_URL PROMPT_IDS_JSON
const path = require("path");
const [modules, baseURL, promptJson] = process.argv.slice(2);
const OpenAI = require(path.join(modules, "openai")).default;

async function main() {
  const client = new OpenAI({ apiKey: "unused", baseURL, maxRetries: 0 });
  const prompt = JSON.parse(promptJson);
  const request = { model: "model", prompt, max_tokens: 12, temperature: 0, ignore_eos: true };
  const completion = await client.completions.create(request);
  let streamedText = "";
  for await (const chunk of await client.completions.create({ ...request, stream: true })) {
    streamedText += chunk.choices[0].text;
  }
  const chatRequest = { model: "model", max_tokens: 8, temperature: 0,
                        messages: [{ role: "user", content: "Hello there!" }] };
  const chat = await client.chat.completions.create(chatRequest);
  let chatStreamed = "";
  for await (const chunk of await client.chat.completions.create({ ...chatRequest,
                                                                    stream: true })) {
    chatStreamed += chunk.choices[0]?.delta?.content ?? "";
  }
  const models = [];
  for await (const model of client.models.list()) models.push(model.id);
  let errorStatus = null, errorMessage = null;
  try {
    await client.completions.create({ model: "model", prompt: [1, 99999999], max_tokens: 2 });
  } catch (error) {
    errorStatus = error.status;
    errorMessage = error.message;
  }
  process.stdout.write(JSON.stringify({
    completion_ids: completion.choices[0].token_ids,
    completion_text: completion.choices[0].text,
    streamed_text: streamedText,
    chat_text: chat.choices[0].message.content,
    chat_streamed: chatStreamed,
    models,
    error_status: errorStatus,
    error_message: errorMessage,
  }));
}

main().catch((error) => {
  console.error(error);
  process.exit(1);
});
