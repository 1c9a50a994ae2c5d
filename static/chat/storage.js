// localStorage that never throws: with storage disabled or full, what would
// be kept lives only as long as the page.

export function load(key) {
  try {
    return localStorage.getItem(key);
  } catch {
    return null;
  }
}

/** Keep `value` under `key`; an empty value forgets it. */
export function save(key, value) {
  try {
    if (value) localStorage.setItem(key, value);
    else localStorage.removeItem(key);
  } catch {
    // not kept: see above
  }
}
