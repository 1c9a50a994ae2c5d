// The moderation console (the Django admin): two small helpers, each doing
// nothing on a page without what it serves.
//
// 1. Each field beside a list's action menu ("Reason", "Mute for") names the
//    actions that use it (data-for-actions) and shows only while one of them
//    is chosen. Without this script every field simply shows.
// 2. Times drawn as <time datetime=… data-local> (the server writes them in
//    UTC) are shown in the reader's own time zone and locale.

const form = document.getElementById("changelist-form");
const menu = form?.querySelector('select[name="action"]');

function showFieldsForAction() {
  for (const field of form.querySelectorAll("[data-for-actions]")) {
    const wanted = field.dataset.forActions.split(" ").includes(menu.value);
    (field.closest("label") ?? field).hidden = !wanted;
    field.disabled = !wanted; // nor sent with an action that ignores it
  }
}

if (menu) {
  menu.addEventListener("change", showFieldsForAction);
  showFieldsForAction();
}

const localFormat = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "short" });

for (const time of document.querySelectorAll("time[data-local]")) {
  const moment = new Date(time.dateTime);
  if (Number.isNaN(moment.getTime())) continue;
  time.title = time.textContent; // the UTC time stays on hover
  time.textContent = localFormat.format(moment);
}
