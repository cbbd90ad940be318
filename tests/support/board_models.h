/* board_models.h - the read models, as the progress board sees them, that the board,
 * HTTP and HTTP-fuzzing suites run against: orders (streams orders and customers),
 * customer_stats (orders) and customers (customers). Header only, so that the fuzz
 * targets, which do not link the Criterion support, can use it too.
 */
#ifndef PROJECTOR_TEST_BOARD_MODELS_H
#define PROJECTOR_TEST_BOARD_MODELS_H

#include "model/model.h"

/* The model set; its storage is static and lives for the whole process. */
static inline const ModelSet *board_models_fixture(void)
{
    static char name_orders[] = "orders", name_stats[] = "customer_stats",
                name_customers[] = "customers";
    static char stream_orders[] = "orders", stream_customers[] = "customers";
    static char *orders_streams[] = {stream_orders, stream_customers};
    static char *stats_streams[] = {stream_orders};
    static char *customers_streams[] = {stream_customers};
    static Model models[] = {
        {.name = name_orders, .streams = orders_streams, .nstreams = 2},
        {.name = name_stats, .streams = stats_streams, .nstreams = 1},
        {.name = name_customers, .streams = customers_streams, .nstreams = 1},
    };
    static const ModelSet set = {.models = models, .count = 3};
    return &set;
}

#endif
