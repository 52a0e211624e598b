// The token prompt and the add-a-group form. The form checks nothing itself: the API
// validates exactly as it validates group files, and its message is shown by the field it names.
import { ApiError, token } from './api.js';
import { el } from './format.js';

let tokenDialog;
/** The token (or its absence) the prompt last came up for by itself: it does not nag about the same one twice. */
let promptedFor;

/**
 * Shows the token prompt with `message`. `automatic`: because a request was refused; then
 * only once per token, so that refreshes failing in the background do not keep covering
 * the page (the token button always opens it).
 */
export function openTokenPrompt(message, { automatic = false } = {}) {
  if (automatic) {
    const current = `${token()}`;
    if (promptedFor === current) return;
    promptedFor = current;
  }
  document.getElementById('token-message').textContent = message;
  tokenDialog.hidden = false;
  document.getElementById('token-input').focus();
}

export function setUpTokenPrompt(onToken) {
  tokenDialog = document.getElementById('token-dialog');
  const input = document.getElementById('token-input');
  const close = () => {
    input.value = '';
    tokenDialog.hidden = true;
  };
  document.getElementById('token-form').addEventListener('submit', (event) => {
    event.preventDefault();
    const value = input.value.trim();
    if (value === '') return;
    close();
    onToken(value);
  });
  document.getElementById('token-forget').addEventListener('click', () => {
    close();
    onToken(null);
  });
  document.getElementById('token-close').addEventListener('click', close);
  document
    .getElementById('token-button')
    .addEventListener('click', () =>
      openTokenPrompt(token() ? 'a token is set for this tab; enter another to replace it' : 'no token set; the server may not need one'),
    );
}

/** 32 random characters: a secret well past the 16 the server requires. */
function generateSecret() {
  const bytes = crypto.getRandomValues(new Uint8Array(24));
  return btoa(String.fromCharCode(...bytes))
    .replace(/\+/g, '-')
    .replace(/\//g, '_');
}

function appRow(index) {
  const field = (name, attrs) => {
    const path = `apps[${index}].${name}`;
    return el(
      'label',
      { class: 'field' },
      el('span', { text: name }),
      el('input', { name: path, 'data-field': path, ...attrs }),
      el('span', { class: 'field-error', 'data-error-for': path }),
    );
  };
  const row = el(
    'div',
    { class: 'app-row', 'data-index': index },
    field('name', { placeholder: 'ssh', autocomplete: 'off' }),
    field('local', { placeholder: '127.0.0.1:22', autocomplete: 'off' }),
    field('remotePort', { placeholder: '0: chosen by the server', inputmode: 'numeric', autocomplete: 'off' }),
  );
  return row;
}

/** The group as the API takes it (JSON), from the form's fields as typed. */
function formBody(form) {
  const value = (name) => form.querySelector(`[name="${name}"]`).value.trim();
  const apps = [...form.querySelectorAll('.app-row')].map((row) => {
    const index = row.dataset.index;
    const port = value(`apps[${index}].remotePort`);
    // A number when it is one; otherwise as typed, so that the API names the mistake.
    return { name: value(`apps[${index}].name`), local: value(`apps[${index}].local`), remotePort: port === '' ? 0 : /^\d+$/.test(port) ? Number(port) : port };
  });
  return { name: value('name'), secret: value('secret'), apps };
}

/** "apps[0].local" → "apps[0]" → "apps" → "". */
function parentPath(path) {
  const parent = path.replace(/(\.[^.[\]]+|\[\d+\])$/, '');
  return parent === path ? '' : parent;
}

/** Puts the API's message next to the field it names (or the nearest enclosing one shown), else atop the form. */
function showError(form, error) {
  let slot = null;
  for (let path = error.field ?? ''; path !== '' && slot === null; path = parentPath(path)) {
    slot = form.querySelector(`[data-error-for="${CSS.escape(path)}"]`);
  }
  slot ??= form.querySelector('[data-error-for=""]');
  slot.textContent = error.message;
  slot.closest('label')?.querySelector('input')?.setAttribute('aria-invalid', 'true');
}

export function setUpGroupForm(submit, failed) {
  const form = document.getElementById('group-form');
  const rows = document.getElementById('app-rows');
  let next = 0;
  const addRow = () => rows.append(appRow(next++));
  addRow();
  document.getElementById('add-app-row').addEventListener('click', addRow);
  document.getElementById('generate-secret').addEventListener('click', () => {
    const secret = form.querySelector('[name="secret"]');
    secret.value = generateSecret();
    secret.type = 'text';
  });
  form.addEventListener('submit', async (event) => {
    event.preventDefault();
    for (const node of form.querySelectorAll('.field-error, .form-error')) node.textContent = '';
    for (const node of form.querySelectorAll('[aria-invalid]')) node.removeAttribute('aria-invalid');
    const outcome = document.getElementById('group-form-outcome');
    outcome.textContent = '';
    const body = formBody(form);
    try {
      await submit(body);
    } catch (error) {
      if (error instanceof ApiError && error.status !== 401) showError(form, error);
      else form.querySelector('[data-error-for=""]').textContent = failed(error, 'not added');
      return;
    }
    form.reset();
    form.querySelector('[name="secret"]').type = 'password';
    rows.replaceChildren();
    next = 0;
    addRow();
    outcome.textContent = `group ${body.name} added: its host's group file needs the same name, secret and apps`;
  });
}
