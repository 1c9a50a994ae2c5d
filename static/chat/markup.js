// Message bodies to DOM nodes: a small parser for the few syntaxes people
// type in chat. It never produces HTML text: every piece of the user's text
// goes into a text node (or an attribute set through the DOM), so a body
// can only ever look like text, links, code and emphasis.
//
//   ```fenced code```   `inline code`   **strong**   *emphasis*
//   http(s):// links    @mentions
//
// Code is taken literally: nothing inside it is parsed.

const FENCE = /```[^\S\n]*([^\n`]*)\n?([\s\S]*?)```/g;

// Letters and digits of any script, so "*émphasis*" and "@Łukasz" work.
const WORD = "\\p{L}\\p{N}";
const NAME = `[${WORD}_.+-]*[${WORD}_+-]`; // Django usernames, but no trailing "."
const INLINE = new RegExp(
  [
    "(?<code>`+)(?<codeText>[^`\\n](?:[^\\n]*?[^`\\n])?)\\k<code>(?!`)",
    `(?<![${WORD}*\\\\])\\*\\*(?<strong>[^\\s*](?:[\\s\\S]*?[^\\s*])?)\\*\\*(?![${WORD}*])`,
    `(?<![${WORD}*\\\\])\\*(?<em>[^\\s*](?:[^*\\n]*?[^\\s*])?)\\*(?![${WORD}*])`,
    "(?<url>\\bhttps?:\\/\\/[^\\s<>\"]+)",
    `(?<![${WORD}_.+@/-])@(?<mention>${NAME})`,
  ].join("|"),
  "gu",
);
const TRAILING_PUNCTUATION = /[.,:;!?'"\]]+$/;

/** An element with a class and text (as a text node). */
export function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

/** A URL with http or https only (anything else stays text), and the part
 * of the match that belongs to it: sentence punctuation and an unbalanced
 * closing bracket after a link are not part of it. */
function trimUrl(raw) {
  let url = raw.replace(TRAILING_PUNCTUATION, "");
  while (url.endsWith(")") && count(url, "(") < count(url, ")")) {
    url = url.slice(0, -1).replace(TRAILING_PUNCTUATION, "");
  }
  return url;
}

function count(text, char) {
  return text.split(char).length - 1;
}

function link(text) {
  let url;
  try {
    url = new URL(text);
  } catch {
    return null;
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") return null;
  const a = el("a", "link", text);
  a.href = url.href;
  a.target = "_blank";
  a.rel = "noopener noreferrer";
  return a;
}

/**
 * Parse one message body. `me` marks mentions of the reader.
 * Returns {nodes: Node[], mentions: Set<string> (lower-cased names)}.
 */
export function parseBody(text, me = "") {
  const mentions = new Set();
  const nodes = [];
  let last = 0;
  for (const match of text.matchAll(FENCE)) {
    const before = text.slice(last, match.index).replace(/\n$/, "");
    inline(before, nodes, me, mentions);
    const pre = el("pre", "code-block");
    pre.append(el("code", "", match[2].replace(/\n$/, "")));
    nodes.push(pre);
    last = match.index + match[0].length;
    if (text[last] === "\n") last += 1; // the block ends its own line
  }
  inline(text.slice(last), nodes, me, mentions);
  return { nodes, mentions };
}

function inline(text, out, me, mentions) {
  let last = 0;
  for (const match of text.matchAll(INLINE)) {
    const g = match.groups;
    let end = match.index + match[0].length;
    let node;
    if (g.codeText !== undefined) {
      node = el("code", "code-inline", g.codeText);
    } else if (g.strong !== undefined) {
      node = el("strong");
      inline(g.strong, node, me, mentions);
    } else if (g.em !== undefined) {
      node = el("em");
      inline(g.em, node, me, mentions);
    } else if (g.url !== undefined) {
      const url = trimUrl(g.url);
      node = link(url);
      end = match.index + url.length;
    } else if (g.mention !== undefined) {
      const name = g.mention.toLowerCase();
      mentions.add(name);
      const mine = name === me.toLowerCase();
      node = el("span", mine ? "mention mention-me" : "mention", match[0]);
    }
    if (!node) continue; // e.g. a link that is not http(s): plain text
    append(out, text.slice(last, match.index));
    append(out, node);
    last = end; // a trimmed link leaves its trailing punctuation as text
  }
  append(out, text.slice(last));
}

function append(out, part) {
  if (part === "") return;
  if (Array.isArray(out)) out.push(typeof part === "string" ? document.createTextNode(part) : part);
  else out.append(part);
}
