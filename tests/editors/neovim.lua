-- Neovim's built-in LSP client against `pushlang lsp`: open a file, wait for its diagnostics, hover the
-- first one, and write what came back as JSON. Run headless by tests/test_lsp_neovim.py:
--   PUSHLANG_PYTHON=… PUSHLANG_FILE=… PUSHLANG_OUT=… nvim --headless -u NONE -c 'luafile neovim.lua'
-- (Neovim 0.7: vim.lsp.start_client and vim.lsp.buf_attach_client.)

local python = os.getenv("PUSHLANG_PYTHON")
local file = os.getenv("PUSHLANG_FILE")
local out = os.getenv("PUSHLANG_OUT")
local report = { diagnostics = {}, hover = nil, error = nil }

local function write_report()
  local handle = io.open(out, "w")
  handle:write(vim.fn.json_encode(report))
  handle:close()
end

local ok, err = pcall(function()
  local received = false
  local client_id = vim.lsp.start_client({
    name = "pushlang",
    cmd = { python, "-m", "pushlang", "lsp" },
    root_dir = vim.fn.fnamemodify(file, ":p:h"),
    init_options = { debounce = 0 },
    handlers = {
      ["textDocument/publishDiagnostics"] = function(e, result, ctx, config)
        for _, d in ipairs(result.diagnostics) do
          table.insert(report.diagnostics, {
            code = d.code, line = d.range.start.line, character = d.range.start.character,
            severity = d.severity, message = d.message,
          })
        end
        received = true
        vim.lsp.handlers["textDocument/publishDiagnostics"](e, result, ctx, config)
      end,
    },
  })
  assert(client_id, "the client did not start")
  vim.cmd("edit " .. vim.fn.fnameescape(file))
  local bufnr = vim.api.nvim_get_current_buf()
  vim.lsp.buf_attach_client(bufnr, client_id)
  assert(vim.wait(30000, function() return received end, 20), "no diagnostics within 30 s")

  local first = report.diagnostics[1]
  if first then
    local params = {
      textDocument = { uri = vim.uri_from_bufnr(bufnr) },
      position = { line = first.line, character = first.character },
    }
    local answers = vim.lsp.buf_request_sync(bufnr, "textDocument/hover", params, 10000) or {}
    for _, answer in pairs(answers) do
      if answer.result then report.hover = answer.result.contents.value end
    end
  end
  vim.lsp.stop_client(client_id)
  vim.wait(5000, function() return vim.lsp.get_client_by_id(client_id) == nil end, 20)
end)
if not ok then report.error = tostring(err) end
write_report()
vim.cmd("qa!")
