// Activates extension.js with stand-ins for VS Code's API and for vscode-languageclient, and prints
// what it would start, for tests/test_vscode.py (VS Code itself is not run):
//
//   node test/client.cjs ['["/path/to/pushlang", "lsp"]']   # the setting pushlang.server.command

'use strict';

const Module = require('node:module');
const path = require('node:path');

const setting = process.argv[2] === undefined ? undefined : JSON.parse(process.argv[2]);
const seen = { clients: [], commands: [], errors: [], started: 0 };

const vscode = {
  workspace: {
    getConfiguration: (section) => ({
      get: (key, fallback) => (section === 'pushlang' && key === 'server.command' && setting !== undefined
        ? setting : fallback),
    }),
    createFileSystemWatcher: (glob) => ({ glob, dispose() {} }),
    onDidChangeConfiguration: () => ({ dispose() {} }),
  },
  commands: {
    registerCommand: (id) => {
      seen.commands.push(id);
      return { dispose() {} };
    },
  },
  window: {
    showErrorMessage: (message) => {
      seen.errors.push(message);
      return Promise.resolve(undefined);
    },
  },
};

class LanguageClient {
  constructor(id, name, serverOptions, clientOptions) {
    seen.clients.push({
      id,
      name,
      serverOptions,
      documentSelector: clientOptions.documentSelector,
      watching: clientOptions.synchronize.fileEvents.glob,
    });
  }

  start() {
    seen.started += 1;
    return Promise.resolve();
  }

  stop() {
    return Promise.resolve();
  }
}

const load = Module._load;
Module._load = function (request, ...rest) {
  if (request === 'vscode') return vscode;
  if (request === 'vscode-languageclient/node') return { LanguageClient };
  return load.call(this, request, ...rest);
};

(async () => {
  // The real module is there for the .vsix to ship.
  require.resolve('vscode-languageclient/node', { paths: [path.join(__dirname, '..')] });
  const extension = require(path.join(__dirname, '..', 'extension.js'));
  const context = { subscriptions: [] };
  await extension.activate(context);
  seen.subscriptions = context.subscriptions.length;
  await extension.deactivate();
  process.stdout.write(JSON.stringify(seen));
})();
