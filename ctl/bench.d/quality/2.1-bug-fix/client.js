// The app's client: sends its token as the standard bearer credentials.
async function listNotes(base, token) {
  const res = await fetch(`${base}/api/notes`, {
    headers: { Authorization: `Bearer ${token}` },
  });
  return { status: res.status, body: await res.json() };
}

module.exports = { listNotes };
