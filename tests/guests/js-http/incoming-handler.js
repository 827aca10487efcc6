// A handler that exports wasi:http/incoming-handler itself, over the
// wasi:http types: componentize-js then leaves the fetch event out, and
// an instance can answer many requests. `served` counts them.

import { Fields, OutgoingBody, OutgoingResponse, ResponseOutparam } from 'wasi:http/types@0.2.10';

let served = 0;

export const incomingHandler = {
  handle(request, responseOut) {
    served += 1;
    const text = `${request.method().tag} ${request.pathWithQuery()} #${served}`;
    const response = new OutgoingResponse(Fields.fromList([['content-type', new TextEncoder().encode('text/plain')]]));
    const body = response.body();
    ResponseOutparam.set(responseOut, { tag: 'ok', val: response });
    const stream = body.write();
    stream.blockingWriteAndFlush(new TextEncoder().encode(text));
    stream[Symbol.dispose]();
    OutgoingBody.finish(body, undefined);
  },
};
