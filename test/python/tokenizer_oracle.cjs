// Hugging Face's JavaScript tokenizers (@lenml/tokenizers, a dependency-free fork of
// transformers.js) as an oracle for xfmr's: encodes and decodes the texts it is given.
//
//   node tokenizer_oracle.cjs NODE_MODULES TOKENIZER_JSON < {"texts": [...], "add_special": bool}
//   -> {"ids": [[...], ...], "decoded": ["...", ...]}
const fs = require("fs");
const path = require("path");
const [modules, tokenizerPath] = process.argv.slice(2);
const { TokenizerLoader } = require(path.join(modules, "@lenml", "tokenizers"));
const request = JSON.parse(fs.readFileSync(0, "utf8"));
const tokenizer = TokenizerLoader.fromPreTrained({
  tokenizerJSON: JSON.parse(fs.readFileSync(tokenizerPath, "utf8")),
  // Decode as the tokenizer's decoder does, without transformers' clean-up of
  // spaces before punctuation (xfmr's decode never cleans up).
  tokenizerConfig: { clean_up_tokenization_spaces: false },
});
const ids = request.texts.map((text) =>
  Array.from(tokenizer.encode(text, { add_special_tokens: request.add_special })));
const decoded = ids.map((tokens) => tokenizer.decode(tokens));
process.stdout.write(JSON.stringify({ ids, decoded }));
