'use strict';
// The pushlang extension for VS Code. package.json declares the `.push` language (its grammar,
// comments and brackets); this client starts the language server, `pushlang lsp` (or the command
// of the setting `pushlang.server.command`), and speaks LSP with it over its standard input and
// output: diagnostics, completion, hover, formatting and the rest come from the server.

const vscode = require('vscode');
const { LanguageClient } = require('vscode-languageclient/node');

const DEFAULT_COMMAND = ['pushlang', 'lsp'];

/** @type {LanguageClient | undefined} */
let client;

/** The setting `pushlang.server.command`: a program and its arguments. */
function serverCommand() {
  const command = vscode.workspace.getConfiguration('pushlang').get('server.command', DEFAULT_COMMAND);
  if (!Array.isArray(command) || command.length === 0
      || !command.every((part) => typeof part === 'string' && part.length > 0)) {
    throw new Error('the setting pushlang.server.command must be a program and its arguments, e.g. ["pushlang", "lsp"]');
  }
  return command;
}

function createClient() {
  const [command, ...args] = serverCommand();
  // No `transport`: plain standard input and output (with TransportKind.stdio the client would
  // add a `--stdio` argument the server does not take).
  const serverOptions = { command, args };
  const clientOptions = {
    documentSelector: [
      { scheme: 'file', language: 'pushlang' },
      { scheme: 'untitled', language: 'pushlang' },
    ],
    // An imported file that changes on disk changes the diagnostics of the files that import it.
    synchronize: { fileEvents: vscode.workspace.createFileSystemWatcher('**/*.push') },
  };
  return new LanguageClient('pushlang', 'pushlang', serverOptions, clientOptions);
}

async function start() {
  try {
    client = createClient();
    await client.start();
  } catch (error) {
    const reason = error instanceof Error ? error.message : String(error);
    vscode.window.showErrorMessage(
      `pushlang: the language server did not start (${reason}). Install pushlang with its lsp extra, `
      + 'or set pushlang.server.command to the command that starts it.');
  }
}

async function stop() {
  const running = client;
  client = undefined;
  if (running) {
    try {
      await running.stop();
    } catch {
      // It never started; nothing to stop.
    }
  }
}

async function restart() {
  await stop();
  await start();
}

/** @param {vscode.ExtensionContext} context */
async function activate(context) {
  context.subscriptions.push(
    vscode.commands.registerCommand('pushlang.restartServer', restart),
    vscode.workspace.onDidChangeConfiguration((event) => {
      if (event.affectsConfiguration('pushlang.server.command')) {
        restart();
      }
    }),
  );
  await start();
}

function deactivate() {
  return stop();
}

module.exports = { activate, deactivate };
