try:
    from .cli.main import main
except KeyboardInterrupt:                # Ctrl-C while seqnet is still being imported: nothing was started
    raise SystemExit(130) from None

raise SystemExit(main())
