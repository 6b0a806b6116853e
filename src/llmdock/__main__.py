from llmdock.cli.main import main

main()
