package io.pgtrickle.sink.webhook;

import java.io.ByteArrayOutputStream;
import java.net.http.HttpResponse;
import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CompletionStage;
import java.util.concurrent.Flow;

/**
 * Reads a whole response body (so the connection can be reused) but keeps only its first bytes, as
 * text: all an error message needs, whatever the endpoint sends.
 */
final class BoundedBody implements HttpResponse.BodySubscriber<String> {

    private final int limit;
    private final ByteArrayOutputStream kept = new ByteArrayOutputStream();
    private final CompletableFuture<String> result = new CompletableFuture<>();

    BoundedBody(int limit) {
        this.limit = limit;
    }

    @Override
    public void onSubscribe(Flow.Subscription subscription) {
        subscription.request(Long.MAX_VALUE);
    }

    @Override
    public void onNext(List<ByteBuffer> items) {
        for (ByteBuffer item : items) {
            int n = Math.min(item.remaining(), limit - kept.size());
            if (n > 0) {
                byte[] bytes = new byte[n];
                item.get(bytes);
                kept.write(bytes, 0, n);
            }
        }
    }

    @Override
    public void onError(Throwable throwable) {
        result.completeExceptionally(throwable);
    }

    @Override
    public void onComplete() {
        result.complete(new String(kept.toByteArray(), StandardCharsets.UTF_8));
    }

    @Override
    public CompletionStage<String> getBody() {
        return result;
    }
}
