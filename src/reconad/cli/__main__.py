from reconad.cli.app import main

main()
