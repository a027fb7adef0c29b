from iobench.cli import main

main()
