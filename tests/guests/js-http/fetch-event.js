// A handler in the service-worker style componentize-js builds by
// default: StarlingMonkey's fetch event, answered with `respondWith`.
// `served` counts the requests this instance has answered.

let served = 0;

addEventListener('fetch', (event) => event.respondWith(answer(event.request)));

async function answer(request) {
  served += 1;
  const url = new URL(request.url);
  if (url.pathname === '/count') {
    return new Response(String(served));
  }
  if (request.method === 'POST') {
    const body = await request.text();
    return new Response(`echo: ${body}`, {
      headers: { 'content-type': request.headers.get('content-type') ?? 'text/plain' },
    });
  }
  return Response.json({ method: request.method, path: url.pathname, query: url.search });
}
