/*
 * test_metrics.c — the Prometheus registry renders DESIGN.md's names, with
 * cumulative histogram buckets. (promtool checks the real output in the
 * integration tests.)
 */
#include "check.h"
#include "metrics.h"

static char *render(void)
{
  pgg_buf b;
  pgg_buf_init(&b);
  pgg_metrics_render(&pgg_metrics_g, &b);
  pgg_buf_append_u8(&b, 0);
  return (char *)b.data;
}

TEST(every_design_metric_name_is_rendered)
{
  static const char *const names[] = {
    "pgguard_schema_drift_objects", "pgguard_schema_drift_check_timestamp_seconds",
    "pgguard_undefined_object_errors_total", "pgguard_repairs_total",
    "pgguard_repair_duration_seconds", "pgguard_replays_total", "pgguard_client_connections",
    "pgguard_server_connections", "pgguard_client_connections_total", "pgguard_bytes_total",
    "pgguard_request_duration_seconds", "pgguard_upstream_up", "pgguard_build_info",
  };
  pgg_metrics_init();
  pgg_metrics_g.drift_known = true;
  char *s = render();
  for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
    char want[128];
    snprintf(want, sizeof(want), "# TYPE %s ", names[i]);
    CHECK(strstr(s, want) != NULL);
  }
  free(s);
}

TEST(drift_gauge_has_kind_and_state_labels)
{
  pgg_metrics_init();
  pgg_metrics_g.drift_known = true;
  pgg_metrics_g.drift[PGG_OBJ_TABLE][PGG_DRIFT_MISSING] = 12;
  char *s = render();
  CHECK(strstr(s, "pgguard_schema_drift_objects{kind=\"table\",state=\"missing\"} 12\n") != NULL);
  CHECK(strstr(s, "pgguard_schema_drift_objects{kind=\"column\",state=\"extra\"} 0\n") != NULL);
  free(s);
}

TEST(drift_gauge_absent_until_a_check_completed)
{
  pgg_metrics_init();
  char *s = render();
  CHECK(strstr(s, "pgguard_schema_drift_objects{") == NULL);
  free(s);
}

TEST(histogram_buckets_are_cumulative)
{
  pgg_metrics_init();
  pgg_histogram_observe(&pgg_metrics_g.repair_duration, 0.003);
  pgg_histogram_observe(&pgg_metrics_g.repair_duration, 0.02);
  pgg_histogram_observe(&pgg_metrics_g.repair_duration, 1000);
  char *s = render();
  CHECK(strstr(s, "pgguard_repair_duration_seconds_bucket{le=\"0.005\"} 1\n") != NULL);
  CHECK(strstr(s, "pgguard_repair_duration_seconds_bucket{le=\"0.025\"} 2\n") != NULL);
  CHECK(strstr(s, "pgguard_repair_duration_seconds_bucket{le=\"120\"} 2\n") != NULL);
  CHECK(strstr(s, "pgguard_repair_duration_seconds_bucket{le=\"+Inf\"} 3\n") != NULL);
  CHECK(strstr(s, "pgguard_repair_duration_seconds_count 3\n") != NULL);
  free(s);
}

TEST(sqlstate_index_maps_only_guarded_codes)
{
  CHECK_INT(pgg_metrics_sqlstate_index("42P01"), PGG_SQLSTATE_42P01);
  CHECK_INT(pgg_metrics_sqlstate_index("22P02"), PGG_SQLSTATE_22P02);
  CHECK_INT(pgg_metrics_sqlstate_index("23505"), -1);
  CHECK_INT(pgg_metrics_sqlstate_index(NULL), -1);
}
