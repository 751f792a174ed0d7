// Encoding speed of Hugging Face's JavaScript tokenizers (@lenml/tokenizers) for
// bench/tokenizers.py: node tokenizer_speed.cjs NODE_MODULES TOKENIZER_JSON TEXT_FILE REPS
// prints {"seconds": [...], "tokens": N} (the encode calls alone, one per repetition).
const fs = require("fs");
const path = require("path");
const [modules, tokenizerPath, textPath, reps] = process.argv.slice(2);
const { TokenizerLoader } = require(path.join(modules, "@lenml", "tokenizers"));
const tokenizer = TokenizerLoader.fromPreTrained({
  tokenizerJSON: JSON.parse(fs.readFileSync(tokenizerPath, "utf8")),
  tokenizerConfig: {},
});
const text = fs.readFileSync(textPath, "utf8");
const seconds = [];
let tokens = 0;
for (let i = 0; i < Number(reps); ++i) {
  const start = process.hrtime.bigint();
  tokens = tokenizer.encode(text, { add_special_tokens: false }).length;
  seconds.push(Number(process.hrtime.bigint() - start) / 1e9);
}
process.stdout.write(JSON.stringify({ seconds, tokens }));
