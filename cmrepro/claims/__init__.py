"""The statistics and registry reading behind every claim verdict, toy (``cmrepro.toy``) or full-scale
(``cmrepro.report.claims``): ``stats`` (paired exact and bootstrap tests, Holm, the verdict rule) and
``registry_file`` (a registry's file, measures and quoted sentences)."""
