// Tokenizes texts with the extension's TextMate grammar, as VS Code does (vscode-textmate with the
// Oniguruma regular expressions of vscode-oniguruma), for tests/test_vscode.py.
//
//   node test/tokenize.mjs [GRAMMAR] < {"name": "text", ...}
//
// reads a JSON object of texts on standard input and prints, for each, its lines, each line a list
// of tokens [text, [scope, ...]] from the outermost scope to the innermost. A line whose
// tokenization stopped early (vscode-textmate's time limit) is reported in "stopped".

import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

import oniguruma from 'vscode-oniguruma';
import textmate from 'vscode-textmate';

const root = new URL('../', import.meta.url);
const grammarPath = process.argv[2] ?? fileURLToPath(new URL('syntaxes/pushlang.tmLanguage.json', root));
const wasm = readFileSync(new URL('node_modules/vscode-oniguruma/release/onig.wasm', root));
await oniguruma.loadWASM(wasm.buffer.slice(wasm.byteOffset, wasm.byteOffset + wasm.byteLength));

const registry = new textmate.Registry({
  onigLib: Promise.resolve({
    createOnigScanner: (patterns) => new oniguruma.OnigScanner(patterns),
    createOnigString: (text) => new oniguruma.OnigString(text),
  }),
  loadGrammar: async (scopeName) =>
    scopeName === 'source.pushlang'
      ? textmate.parseRawGrammar(readFileSync(grammarPath, 'utf8'), grammarPath)
      : null,
});
const grammar = await registry.loadGrammar('source.pushlang');
if (!grammar) throw new Error(`no grammar in ${grammarPath}`);

const chunks = [];
for await (const chunk of process.stdin) chunks.push(chunk);
const texts = JSON.parse(Buffer.concat(chunks).toString('utf8'));

const out = {};
for (const [name, text] of Object.entries(texts)) {
  let state = textmate.INITIAL;
  const lines = [];
  const stopped = [];
  text.split(/\r?\n/).forEach((line, number) => {
    const result = grammar.tokenizeLine(line, state, 1000);
    if (result.stoppedEarly) stopped.push(number + 1);
    // The last token may run past the line's end (vscode-textmate adds the newline).
    lines.push(result.tokens
      .map((token) => [line.slice(token.startIndex, Math.min(token.endIndex, line.length)), token.scopes])
      .filter(([value]) => value.length > 0));
    state = result.ruleStack;
  });
  out[name] = { lines, stopped };
}
process.stdout.write(JSON.stringify(out));
