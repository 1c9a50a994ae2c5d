// The moderation console's lists: each field beside the action menu
// ("Reason", "Mute for") shows only while an action that uses it is chosen.
// A field names its actions in data-for-actions; without this script every
// field simply shows.

const form = document.getElementById("changelist-form");
const menu = form?.querySelector('select[name="action"]');

function update() {
  for (const field of form.querySelectorAll("[data-for-actions]")) {
    const wanted = field.dataset.forActions.split(" ").includes(menu.value);
    (field.closest("label") ?? field).hidden = !wanted;
    field.disabled = !wanted; // nor sent with an action that ignores it
  }
}

if (menu) {
  menu.addEventListener("change", update);
  update();
}
